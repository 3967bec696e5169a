"""Build of the rate_rnn op: the C++ CPU extension always, the CUDA extension when nvcc and a CUDA torch exist.

Install with `pip install --no-build-isolation -e .` after torch (the build needs the installed torch).
RATE_RNN_CUDA=0 skips the CUDA extension; RATE_RNN_CUDA=1 demands it (the build fails loudly without it).
"""
import glob
import os
import runpy
import shutil

from setuptools import find_packages, setup

_config = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "rate_rnn", "_build_config.py"))
CPU_SOURCES, SHARED_SOURCES, CXX_FLAGS, LINK_FLAGS, NVCC_FLAGS = (
    _config[k] for k in ("CPU_SOURCES", "SHARED_SOURCES", "CXX_FLAGS", "LINK_FLAGS", "NVCC_FLAGS"))


def extensions():
    import torch
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    exts = [CppExtension("rate_rnn._C", CPU_SOURCES, extra_compile_args={"cxx": CXX_FLAGS},
                         extra_link_args=LINK_FLAGS)]
    want = os.environ.get("RATE_RNN_CUDA", "auto")
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    have_cuda = torch.version.cuda is not None and shutil.which("nvcc") is not None and bool(cuda_sources)
    if want == "1" and not have_cuda:
        raise RuntimeError("RATE_RNN_CUDA=1 but nvcc, a CUDA build of torch, or csrc/cuda/*.cu is missing")
    if have_cuda and want != "0":
        include, lib_dirs, link = _config["cuda_link"]()  # the pip CUDA wheels' libraries, else the toolkit's
        ext = CUDAExtension("rate_rnn._C_cuda", cuda_sources + SHARED_SOURCES, include_dirs=include,
                            library_dirs=lib_dirs, libraries=[link["cublas"]],
                            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS}, extra_link_args=LINK_FLAGS)
        # CUDAExtension adds a plain "cudart", which the pip wheels do not ship under that name.
        ext.libraries = [link["cudart"] if lib == "cudart" else lib for lib in ext.libraries]
        exts.append(ext)
    return exts


def build_ext():
    from torch.utils.cpp_extension import BuildExtension

    return BuildExtension.with_options(use_ninja=True)


setup(
    name="rate-rnn-multitask",
    version="0.1.0",
    description="Fused leaky rate-RNN op and the multitask cognitive-task suite of Yang et al. (2019)",
    packages=find_packages(include=["rate_rnn", "rate_rnn.*", "multitask", "multitask.*"]),
    py_modules=["RNN_rate_dynamics", "RNN_custom"],
    python_requires=">=3.10",
    install_requires=["torch>=2.4,<=2.14.1", "numpy", "scipy", "matplotlib", "scikit-learn", "tqdm"],
    extras_require={"test": ["pytest", "hypothesis", "expecttest"]},
    ext_modules=extensions(),
    cmdclass={"build_ext": build_ext()},
    entry_points={"console_scripts": ["multitask=multitask.__main__:main"]},
)
