"""Pulled data sources: DATABASE and REST_API sources whose new records a pull lands as files."""
