"""Driver-app simulator: a pure movement model and a client that speaks the protocol."""
