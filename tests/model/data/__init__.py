

def clear_memo() -> None:
    """Forget the decoded datasets this process holds (the .npz cache on disk stays): a test sees the cache."""
    from cycleseg.model.data import cache

    cache._MEMO.clear()
