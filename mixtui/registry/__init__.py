"""The models mixtui knows: models.toml entries (spec, loader) and their files on disk (local,
check). Import from the modules; this package imports nothing, so that reading a spec does not
load the file checks."""
