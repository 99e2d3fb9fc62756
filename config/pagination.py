from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pages stay fast and stable on tables of millions of rows (no OFFSET)."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 500
