"""The command palette (ctrl+p): every action of the current screen and of the app, named, and
only those the user may run (a supervisor's palette has no edit commands)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

PALETTE_NAMES = {
    "new": "New assignment", "move": "Move the assignment", "reassign": "Reassign the assignment",
    "status": "Change the assignment's status", "delete": "Delete the assignment",
    "generate": "Generate assignments for an order", "order": "Open the order",
    "filter": "Filter the grid", "today": "Go to today", "help": "Help: every key",
    "edit_order": "Edit the order header", "accept": "Accept the assignment",
    "start": "Start the assignment", "complete": "Complete the assignment",
    "save": "Save the parameters", "back": "Back",
}


class DispatchCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from app.tui.screens.help import bindings_of

        screen = self.screen
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for keys, what, tip in bindings_of(screen):
            action = _action_for(screen, what)
            if action is None:
                continue
            target, name = action
            title = PALETTE_NAMES.get(name.split("(")[0], what)
            if name.startswith("show("):
                title = f"Go to {what}"
            out.append((title, f"{tip or what} (key {keys})".replace("[", "(").replace("]", ")"),
                        partial(target.run_action, name)))
        return out

    async def discover(self) -> Hits:
        for title, help_, cb in self._commands():
            yield DiscoveryHit(title, cb, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_, cb in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), cb, help=help_)


def _action_for(screen: Any, description: str) -> tuple[Any, str] | None:
    from app.tui.screens.help import all_bindings
    from app.tui.widgets.grid import PagedGrid

    owners: list[Any] = [screen]
    owners += list(screen.query(PagedGrid))[:1]
    owners.append(screen.app)
    for owner in owners:
        for b in all_bindings(type(owner)):
            if getattr(b, "description", None) == description:
                return owner, b.action.removeprefix("app.") if owner is screen.app else b.action
    return None
