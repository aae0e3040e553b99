"""The island day's tools, used before and after the day, never by the running cycle.

:mod:`controller.island` holds what runs every cycle (the grid state machine, following
and re-planning the plan, shedding and its guard, curtailment and outage estimates).
This room holds what a coordinator runs around the day, from the command line:

* planning: :mod:`~controller.island_day.plan_render` (the plan in words and JSON), the
  survival odds (:mod:`~controller.island_day.survival`, ``survival_sim``,
  :mod:`~controller.island_day.weather`), the operating reserve and black-start checks
  (:mod:`~controller.island_day.reserve`, :mod:`~controller.island_day.black_start`), and
  their verdict (:mod:`~controller.island_day.trust`);
* :mod:`~controller.island_day.init_tables`: ``island init``'s ``[site]``/``[island]``;
* the rehearsal on simulated devices (:mod:`~controller.island_day.rehearse` and its
  ``rehearse_*`` modules), which imports :mod:`simulators`, with its library of named
  scenarios (:mod:`~controller.island_day.scenarios`) and the episode's times and reason
  counts read from the ledger (:mod:`~controller.island_day.episode`);
* the public report (:mod:`~controller.island_day.report` and its ``report_*`` modules),
  which imports matplotlib.

``tests/test_rooms.py`` checks that the controller's runtime imports nothing from here.
"""
