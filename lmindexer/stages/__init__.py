"""The pipeline's stages, one module per command, in the order `lmindexer run` takes them:

    prepare -> init-model -> learn-ids -> assign-ids -> id-report        (baseline-ids: IDs from another method)
            -> train-generator -> evaluate

Each module's entry function is named after its command and takes its own settings section first and the run's
`RunContext` (lmindexer/paths.py) second, never the whole config. No stage imports another (an import contract
says so); lmindexer/pipeline.py sequences them, and the CLI, Tune's trials and the benches call it. What stages
share lives below them: data/ (readers, the prepared corpus), ids/ (ID methods, the ID table writer and reader),
downstream/ (examples, decoding, the generators' training tasks), eval/ (metrics), train/ (the Ray Train loop).
"""
