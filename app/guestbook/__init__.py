"""The reference Flask application deployed by flaskops."""
