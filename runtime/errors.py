"""pyrun's one error type and the exit codes Docker users already know.

125  pyrun itself failed (bad input, a setup step failed)
126  the command was found but could not be executed
127  the command was not found
128+N the container was killed by signal N
124  the container ran past its --timeout and was stopped (as timeout(1))
"""
EXIT_PYRUN = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
EXIT_TIMEOUT = 124


class PyrunError(Exception):
    """A failure that pyrun reports as one line: "STEP: DETAIL"."""

    def __init__(self, step: str, detail: str, exit_code: int = EXIT_PYRUN):
        super().__init__(f"{step}: {detail}" if detail else step)
        self.step = step
        self.detail = detail
        self.exit_code = exit_code
