"""The Forge door (CONTRACT.md section 9): the Forge app's manifest, and the Forge Remote side of the add-on."""
