//! `.torrent` metainfo (BEP 3, v1).
