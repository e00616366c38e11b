"""Human evaluation web app. Imports neither models nor the engine."""
