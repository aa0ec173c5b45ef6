"""Secret scrubbing, the one home of its rules: which keys are sensitive, how
text, URLs and card numbers are masked, and the scrubber that applies them, both to
protobuf requests (with a user callback) and to Python values on their way into the
direct encoder of the export path.
"""
