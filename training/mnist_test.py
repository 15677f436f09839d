"""`python -m training.mnist_test DIR`: the official 10,000 MNIST test digits, as the idx files that
`--reference-dir` and `--eval-reference-dir` read.

The package ships 5,000 training digits, not the test set (a held-out set has to be one the
generator never saw). This fetches the test split once through `keras.datasets.mnist` (Keras
downloads `mnist.npz` from Google's storage into `~/.keras/datasets/`, so run it on a machine that
reaches it; copy DIR to one that does not) and writes `t10k-images-idx3-ubyte.gz` and
`t10k-labels-idx1-ubyte.gz` into DIR.
"""

from __future__ import annotations

import argparse
import sys

from common.quiet import quiet_tensorflow
from common.realdata import write_idx_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.mnist_test", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("directory", help="Where to write the idx files (made if needed), e.g. data/mnist-test.")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    import keras

    try:
        _, (images, labels) = keras.datasets.mnist.load_data()
    except Exception as err:  # no route to Google's storage, a proxy, a full disk
        print(f"error: could not fetch MNIST through keras.datasets ({type(err).__name__}: {err}); on a machine "
              "without internet access, run this where there is one and copy the directory over", file=sys.stderr)
        return 1
    root = write_idx_dir(args.directory, images, labels)
    print(f"wrote {len(images)} MNIST test digits to {root}: use --reference-dir {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
