//! Segmented append-only write-ahead log with crc32-framed records.
