"""The ``mlp-xp`` command run in-process, for the tests."""

from mlp_xp.cli import main


def run(capsys, *argv):
    """(exit status, stdout, stderr) of mlp-xp: one string is split at spaces (the command line as typed), one
    list is taken as it is (arguments holding spaces), several arguments are the argument list."""
    if len(argv) == 1:
        argv = argv[0].split() if isinstance(argv[0], str) else list(argv[0])
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
