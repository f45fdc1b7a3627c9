"""Where images come from: tfds datasets, class folders, a user's files, cam_shapes."""
