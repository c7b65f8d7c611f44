"""The project's exception and warning types (bottom of the import graph).

Exceptions
----------
:class:`CarecallError` is the base of everything the toolkit raises on purpose.
:class:`InputError` (also a ``ValueError``) means the user's input is wrong
(data, arguments, files, output paths): the CLI exits with code 2 for it and 1
for anything else.  :class:`ContractError` (data not meeting the contract) is an
``InputError``.

Warnings
--------
Statistical caveats are warnings, not errors (as in lifelines).  Every warning
the toolkit issues is a :class:`CarecallWarning`, so a report can collect only
the project's own caveats (``warnings.catch_warnings`` with a filter on the
class), and a user can silence one kind without silencing the libraries::

    warnings.simplefilter("ignore", carecall_eval.errors.FollowupWarning)
"""
from __future__ import annotations


class CarecallError(Exception):
    """Base class of every error carecall_eval raises on purpose."""


class InputError(CarecallError, ValueError):
    """The user's input (data, argument, file or output path) cannot be used; the message says why."""


class PathNotFoundError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist (an :class:`InputError` and a ``FileNotFoundError``)."""


class NotAvailableError(CarecallError, ValueError):
    """A figure cannot be computed on these data (for example no one observed long enough)."""


class CarecallWarning(UserWarning):
    """Base class of every warning carecall_eval issues."""


class DataWarning(CarecallWarning):
    """The data are usable but something in them deserves attention (rows left out, values filled)."""


class FollowupWarning(DataWarning):
    """Follow-up is incomplete: rows censored by the data end are left out of a window."""


class ConvergenceWarning(CarecallWarning):
    """A model fit did not converge or hit separation; treat the estimate with caution."""


class SmallSampleWarning(CarecallWarning):
    """Too few units for a stable estimate; the figure is shown with a caveat or left out."""


__all__ = ["CarecallError", "InputError", "PathNotFoundError", "NotAvailableError", "CarecallWarning", "DataWarning",
           "FollowupWarning", "ConvergenceWarning", "SmallSampleWarning"]
