"""Physical conventions, each defined once: Hartley transforms, lattice, dose, CTF, poses, tilt schemes."""
