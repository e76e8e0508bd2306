"""backbone.broker.protocol"""
