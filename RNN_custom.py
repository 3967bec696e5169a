from rate_rnn import RNNCell, RNNLayer  # noqa: F401  (the published port README imports it from here)
