"""The kit's training engine: the fast path, and the resumable trainer around the book's step functions."""
