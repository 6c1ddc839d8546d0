//! SQLite store (rusqlite).
