from rate_rnn import RNNCell, RNNLayer  # noqa: F401  (the published port imports it from here)
