"""backbone.broker.handlers"""
