"""The sync coordinator: commands in, one transaction each, changes out. Never imports textual."""
