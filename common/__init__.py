"""The bottom layer: small utilities every other package uses (atomic files, image grids).

Only the standard library, numpy and Pillow: importing it never pulls in TensorFlow or Keras.
"""
