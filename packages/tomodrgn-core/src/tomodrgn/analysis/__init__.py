"""Analysis of trained models: metrics (FSC, CC, soft mask, ARI), latent (PCA, UMAP, k-means), volumes (streamed
volume PCA, convergence), spatial (neighbours in tomograms), plots (PNG), report (Markdown), pipeline
(``analyze_run``, ``evaluate_against_truth``). Submodules are imported explicitly (matplotlib/umap load lazily)."""
