"""Evaluation metrics: identity backends, IC / TL-ID / TG-ID, SSIM / PSNR / MSE / LPIPS, RAVDESS trees, reports.

Import the submodules directly (``from vidinv.metrics.consistency import identity_consistency``);
this package imports nothing heavy.
"""
