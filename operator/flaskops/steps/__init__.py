"""The steps of one FlaskApp reconcile, one module per concern (CloudNativePG's controller layout).

Each step is a function that takes what it needs — the parsed spec, the database target, the API client,
the status before this reconcile — and returns a frozen `result.StepResult` (conditions, status fields,
Events, when to look again, whether the flow halts); none writes into state another step shares.
reconcile.py calls them in order and merges their results (status.assemble).

    resolve    which database: the PostgresServer or the user's URL              -> Target
    pairing    the environment/database pairing rules S1-S6 (safety.py)          -> EnvironmentSafe
    database   role, database and the <app>-db Secret (SQL in postgres/)         -> DatabaseReady
    secretkey  the <app>-secret-key Secret, rotation                             -> DatabaseReady
    migrate    one migration Job per image and database, one at a time           -> Migrated
    rollout    Deployment, Service, PodDisruptionBudget after the migration      -> Available
    finalize   drop the database of a deleted Delete-policy app                  -> (finalizer)
    status     the merged status, the summary conditions, transition Events (pure)
    children   writing a child: owned only, only when it differs, drift told, deletes by uid
    result     StepResult, Halt, Event, Result
"""
