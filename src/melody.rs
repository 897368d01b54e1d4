//! Melody contour (being written: see the helper's brief).
