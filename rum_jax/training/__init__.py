"""The one training engine and what runs on it: state, steps, plans, seeds over devices, checkpoints."""
