"""Reference table of the currencies the service charges in (filled by the seed)."""

from peewee import CharField, IntegerField

from models.base import BaseModel


class Currency(BaseModel):
    """Lets SQL reports turn minor units into amounts: `amount / POW(10, minor_unit_exponent)`."""

    code = CharField(primary_key=True, max_length=3)
    minor_unit_exponent = IntegerField()
    minimum_charge = IntegerField()
