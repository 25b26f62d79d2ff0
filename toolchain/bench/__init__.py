"""Benchmarks measured side by side, each runtime in its own worker process (``facenet bench``).

:mod:`.runner` schedules the measurements and returns the report; each runs in a fresh
``python -m toolchain.bench`` process (:mod:`.worker`), asked for by a task dataclass of
:mod:`.specs` (:mod:`.processes` starts it and reads its peak RSS). :mod:`.rows` holds what was
measured, :mod:`.targets` the ratios and the issue's goals, :mod:`.report` renders JSON, markdown,
PNG and the console table. :mod:`.config` is how much to measure, :mod:`.inputs` what is read
(the benchmarked formats come from :data:`toolchain.convert.formats.FORMATS`), :mod:`.machine`
the CPU and its sgemm rate, :mod:`.baselines` the pipelines compared with, :mod:`.real_size` the
real-size photo rows.

Two measurements are packages of their own: :mod:`.scale` (``facenet bench scale``: gallery
search at up to a million identities, enrollment and batch rates) and :mod:`.loadtest`
(``facenet bench load``: ``facenet serve`` under concurrent clients and a SIGKILL).
"""
