"""Definitions declared in YAML, one folder per component (`<name>/defs.yaml`).

`dg scaffold defs ray_assets.components.RayTableAsset <name>` writes one here; `definitions.defs`
loads them all (`dg.load_from_defs_folder`), so `dg dev` and `dagster dev -w workspace.yaml`
show the same assets. This is the project's `[tool.dg.project] defs_module`: a `defs` subpackage
would shadow the `defs` object of `definitions`.
"""
