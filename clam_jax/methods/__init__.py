"""One module per method: train states and pure step functions. No files, no CLIs."""
