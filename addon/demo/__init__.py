"""The demo door: `addon demo`'s local Jira site, over the same core as the Connect and Forge doors.

Nothing here exists unless `addon demo` starts it (`addon.demo.command`): `addon serve` never opens this door, so
none of its routes (`/demo/…`) answer there. See docs/demo.md.
"""
