"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class Pan360Error(Exception):
    """A problem with the user's input or request (bad file, missing stream, refused overwrite...).

    Library code raises it with a message meant for the user; the CLI prints that message on one
    line and exits non-zero, without a traceback unless --debug.
    """
