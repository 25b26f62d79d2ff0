"""The documentation's own tooling (not part of the ``toolchain`` package): run by ``nox -s docs``.

- :mod:`.measurements`: the committed snapshot ``docs/measurements/*.json`` of the report fields
  the docs cite, each stamped with machine, date, commit and report (``--refresh`` copies the
  current ``artifacts/reports`` into it); :mod:`.extract` says which fields of which report.
- :mod:`.render`: Jinja2 renders ``docs/templates`` into ``README.md`` and ``docs/pages`` with the
  snapshot, the CLI's option defaults and the code's constants.
- :mod:`.numbers`: the check ``nox -s lint`` runs: a rendered file that differs from its template,
  or a measured-looking number typed by hand, fails.
- :mod:`.cli_reference`: the CLI reference page, walked from the typer app.
- :mod:`.blocks`: the fenced code blocks of the pages, for the test that runs them.
- :mod:`.pictures` and :mod:`.hooks`: the pictures copied from ``artifacts/`` into the build, and
  the mkdocs hooks that add them and the CLI page to the site.

Run ``python -m docs.tooling --help`` from the repository root.
"""
