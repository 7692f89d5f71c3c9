"""The ``radshare`` console script: Django's management commands with radshare's settings preset."""

from __future__ import annotations

import os
import sys

from radshare.core.config import ConfigError, load


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    # Everything radshare writes holds patient data or secrets: the database, stored instances, renders, the key,
    # the demo outbox. Files 0600, folders 0700, whoever starts it (docs/security.md, "Data at rest").
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "radshare.settings")
    # Validate before Django imports the settings, so a bad value is one clear line, not a traceback.
    try:
        load()
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"radshare: configuration error: {problem}\n")
        raise SystemExit(2) from None

    from django.core.management import execute_from_command_line  # late import: after the settings check

    argv[0] = "radshare"
    try:
        execute_from_command_line(argv)
    except KeyboardInterrupt:
        # Ctrl-C (also while a command is still starting up) ends quietly, as shells expect: no traceback.
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
