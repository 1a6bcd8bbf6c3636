"""The kit's data room: reading, checking and writing the book's data sets, and their loaders."""
