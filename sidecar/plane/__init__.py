"""The monitoring plane in its own process: the serving process's link to it, and the process itself."""
