"""The NAS: file storage backends (SMB, local folder) and the layout of files on them."""
