"""Private implementation of fmt-cosmo; the public API is re-exported by `fmt_cosmo`."""
