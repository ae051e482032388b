"""The migration assistant: the sync-only idioms of legacy routes, and drafts of their twins.

Static: the app is imported to read its routes (its models and schemas are
real), every endpoint's module is read with libcst, and no endpoint ever runs.

    inventory       an app's legacy endpoints, twins, modes, and where it keeps its twins
    sources         files parsed once, with positions, beside the modules they were imported as
    signatures      which parameters hand a function the sync session, directly or by a dependency
    orm             what the models say: keys, columns, lazy relationships, write hooks
    names, syntax   names a draft imports or a function reads; small questions about code
    reader          what the reading of a module keeps per function
    analysis        each function read in order: assignments, loops, returns, relationship reads
    calls           its calls: Query chains, session calls, blocking calls, the app's own
    chains          `db.query(M)...` read, and rebuilt as `select()` and an awaited run
    shapes, patterns, pages
                    the lean rows of the translation table: a few statements, one helper call
    tracking        which names hold ORM objects, and what was loaded with them
    results         objects from 2.0-style and awaited reads, for the same tracking
    blocking        calls that block the thread, by qualified name
    facts           what the analysis found: idioms, and the draft's changes
    modules         a module's facts settled: helpers followed, what becomes async, what is left
    idioms          one idiom as reported
    scan, report    the scan of an app, and the scan as text
    rewrites        the draft's changes, node by node
    import_edits    a draft's imports: dropped, moved, added, sorted
    layout          statements the draft writes, laid out as the project's formatter would
    draft           the draft async twin of a module, with its `# MIGRATE:` notes
    guard           relationship reads that would load lazily, for an app's own tests

Invariants: an idiom is reported automatic exactly when the draft rewrites it;
whatever the draft cannot translate safely stays as it was, under a
`# MIGRATE:` comment saying why; a draft never overwrites a file unless asked.
"""
