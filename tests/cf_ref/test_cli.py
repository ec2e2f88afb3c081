from click.testing import CliRunner

from cf_ref.cli import main


def test_help_at_every_level():
    runner = CliRunner()
    for args in ([], ["toy"], ["full"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_user_errors_and_os_errors_become_one_line_and_bugs_keep_their_traceback():
    """The one boundary (cf_ref.cli.TrackGroup.invoke): no command catches errors itself."""
    import errno

    import click
    import pytest

    from cf_ref.cli import TrackGroup
    from cf_ref.errors import UserError

    @click.group(cls=TrackGroup)
    def group() -> None:
        pass

    failures = {
        "user": UserError("the thing you gave is wrong"),
        "disk": OSError(errno.ENOSPC, "No space left on device", "/runs/x/model.safetensors"),
        "bug": RuntimeError("a bug"),
    }
    for name, exc in failures.items():

        @group.command(name)
        def command(exc=exc) -> None:
            raise exc

    runner = CliRunner()
    user = runner.invoke(group, ["user"])
    assert user.exit_code == 1 and user.output == "Error: the thing you gave is wrong\n"
    disk = runner.invoke(group, ["disk"])
    assert disk.exit_code == 1 and disk.output == "Error: No space left on device: /runs/x/model.safetensors\n"
    with pytest.raises(RuntimeError, match="a bug"):
        runner.invoke(group, ["bug"], catch_exceptions=False)
