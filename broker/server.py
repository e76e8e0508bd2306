"""backbone.broker.server"""
