//! Configuration: the TOML file, its validation and its errors.
