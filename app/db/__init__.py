"""The repository layer: models, engine and queries. Never imports textual."""
