"""The `tuner` command: one module per group of subcommands, each a thin layer over the Python
API that parses its flags into the API's option objects. Heavy libraries load inside the handlers
only, so `tuner --help` and `tuner validate` answer fast."""

from tuner.cli._main import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_parser,
    entry,
    main,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "entry",
           "main"]
