//! Piece storage: memory-mapped files, piece/file mapping, resume record.
