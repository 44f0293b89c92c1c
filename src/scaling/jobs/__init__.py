"""A job's life, from a Hydra config to its ``results.json``.

- :mod:`.identity`: bookkeeping keys, ``config_hash``, ``train_hash``, ``data_hash``, job folder names;
- :mod:`.config`: the job's config types (``FinetuneConfig``, ``LockConfig``) and the YAML resolvers;
- :mod:`.lock`: one process per job (``job.lock``);
- :mod:`.resume`: which checkpoint a re-run resumes from;
- :mod:`.cache`: fine-tuned weights shared by jobs with the same training;
- :mod:`.from_job`: a finished job scored again without training (``scaling.evaluate from_job=...``);
- :mod:`.tracking`: the CSV log (history kept across resumes) and W&B;
- :mod:`.record`: ``results.json`` as the job fills it (``JobRecord``), and where and with what it ran;
- :mod:`.run`: the job's life around its steps (``run_job``); the steps themselves, data ->
  model -> fine-tune -> evaluate, are :func:`scaling.pipeline.train_and_evaluate`;
- :mod:`.sweep`: the Hydra task function, the entry points' ``main`` and the sweep's exit status.

``scaling.train`` and ``scaling.evaluate`` are thin Hydra entries over :func:`.sweep.hydra_entry`.
"""
