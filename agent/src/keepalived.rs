//! keepalived.conf importer.
