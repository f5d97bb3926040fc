"""A/B experiments and shadow traffic (issue 17): the definition, assignment, and the statistics.

One module per concept, and this ``__init__`` imports none of them, as
uvicorn keeps its subpackages', so the request path can take
:mod:`.assignment` (the standard library and the definition) without loading
numpy or scipy:

- :mod:`.definition`: the ``SIDECAR_EXPERIMENT_PATH`` file, validated into an
  :class:`~.definition.Experiment` (every problem at once, :class:`~.definition.ExperimentError`);
  :mod:`.fields` reads its typed values;
- :mod:`.assignment`: :class:`~.assignment.Assigner`, a keyed hash of the unit into an arm;
- per-arm summaries: :mod:`.moments` (means, proportions, delta-method ratios);
- the tests, one file each: :mod:`.welch`, :mod:`.proportions` (returning a
  :class:`~.comparison.Comparison`), the relative :mod:`.lift`, the
  always-valid :mod:`.sequential` one, and :mod:`.compare`, which puts them
  together into an :class:`~.compare.Effect` per metric; :mod:`.correction`
  for multiplicity and :mod:`.power` for the MDE and the n still needed;
- the checks: :mod:`.srm`, :mod:`.novelty`, :mod:`.simpson`, :mod:`.guardrails`;
- :mod:`.decision`: invalid, revert, roll_out, no_difference or keep_running;
- the request side: :mod:`.routing` (:class:`~.routing.Router`, an arm and
  upstream per request), :mod:`.units` (a unit's one text form; a feature
  key's unit from a body), :mod:`.shadow` (mirrors to the challenger),
  :mod:`.tap` (the challenger's answers onto the capture hand-off),
  :mod:`.outcomes` (the ``POST /api/v1/outcomes`` body);
- the analysis: :mod:`.data` (what it reads, per arm), :mod:`.gather` (reads
  it from the prediction store), :mod:`.labelled` (a label metric's value per
  request), :mod:`.analysis` (:func:`~.analysis.analyse`: SRM, effects,
  correction, power, novelty, Simpson, guardrails, decisions into one
  :class:`~.snapshot.ExperimentSnapshot`), :mod:`.view` (the body of
  ``GET /api/v1/experiments`` and the metrics' samples);
- a shadow experiment's comparison of its two models on the same requests:
  :mod:`.pairing` (the challenger's answers counted, read and stored beside
  control's predictions), the paired statistics, one file each
  (:mod:`.agreement` with Wilson's interval, :mod:`.differences`, :mod:`.shift`
  for the PSI between the two, :mod:`.mcnemar`, :mod:`.paired` for the
  paired t), :mod:`.shadow_analysis` into one
  :class:`~.shadow_snapshot.ShadowSnapshot`, :mod:`.shadow_view` (the API's
  ``shadow`` section and the metrics' samples), :mod:`.shadow_runner` (its
  evaluator every interval);
- the running experiment, in the monitoring process: :mod:`.runner`
  (:class:`~.runner.ExperimentRunner`, the evaluator that gathers, analyses
  off the loop and publishes a snapshot every interval, from a start the
  store keeps for every replica; :mod:`.periodic` has what it shares with the
  shadow comparison's :mod:`.shadow_runner`), :mod:`.metrics` (the analysis metrics over
  its snapshot, and a shadow comparison's), :mod:`.api` (``GET /api/v1/experiments``
  and ``POST /api/v1/outcomes``, routes for the admin app);
- in the serving process: :mod:`.traffic` (the assignments per arm, the
  shadow mirrors' outcomes and the answers the tap could not hand over, as
  metrics).

The runner, the API and the metrics import the statistics (scipy) only when
they analyse or render an analysis, so the serving process, which builds
the same components, never loads them; ``tests/experiments/test_layering.py``
holds this.
"""
