//! rewind: placeholder while the engine lands.
