"""Exports for other programs: ChimeraX placement scripts (:mod:`.chimerax`), particle selections as filtered STAR
files and index lists (:mod:`.selections`)."""
